"""The training flags, declared once: generated from the config dataclasses.

Every field of ``TrainConfig`` (the loop), ``QSMConfig`` and ``QSMHyperparams`` becomes a
flag of the same name, its type from the field's default, its help from the class
docstring's ``Attributes`` section, its default None: a flag overrides the env's preset
(or a resumed run's config) only when it is given. ``run.py``, ``compare.py`` and
``brax_sac.py`` each pick the fields they take (``define_config_flags``) and read them
back as a preset-style override (``given_override``), so a new config field is a new
flag of every script without touching them. A field that defaults to None and holds a
number when set (``eval_temperature``, ``target_temperature``) takes ``none`` as well, so
a preset's number can be set back to None on the command line.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Iterable, Optional

from absl import flags

from qsm_jax.algorithms import ALGORITHMS
from qsm_jax.config import (CRITIC_REWARD_NORMS, SCORE_CRITICS, SCORE_SCALES, QSMConfig,
                            QSMHyperparams, TrainConfig, is_optional_number)
from qsm_jax.diffusion import BETA_SCHEDULES

# Fields that are not flags of their own: the env (each script declares it with its own
# default), the sweep (run.py's --sweep=NAME=V1,V2) and the nested configs themselves.
NOT_FLAGS = ("env", "sweep_name", "sweep_values", "qsm", "hparams")
# Flags whose values are a closed set (checked by absl at parse time).
CHOICES = {"algo": tuple(ALGORITHMS), "beta_schedule": tuple(BETA_SCHEDULES),
           "score_scale": SCORE_SCALES, "score_critic": SCORE_CRITICS,
           "critic_reward_norm": CRITIC_REWARD_NORMS}
# Which part of a preset-style settings dict a field belongs to (None: the top level).
GROUPS = ((None, TrainConfig), ("qsm", QSMConfig), ("hparams", QSMHyperparams))


@dataclasses.dataclass(frozen=True)
class ConfigFlag:
  """One generated flag: ``name`` = the field, ``group`` = None / 'qsm' / 'hparams'."""
  name: str
  group: Optional[str]
  default: object
  help: str
  optional_number: bool = False  # default None, a number when set: a float flag


def attribute_docs(cls) -> dict[str, str]:
  """{field: its text} from ``cls``'s Google-style ``Attributes:`` docstring section
  (an entry may name several fields, ``a, b: text``; indented lines continue it)."""
  docs, names, in_section = {}, [], False
  for line in (inspect.getdoc(cls) or "").splitlines():
    if line.strip() == "Attributes:":
      in_section = True
      continue
    if not in_section:
      continue
    if line and not line.startswith(" "):
      break  # the next section
    entry = re.match(r"^  (\w+(?:, \w+)*): (.*)$", line)
    if entry:
      names = entry.group(1).split(", ")
      for name in names:
        docs[name] = entry.group(2).strip()
    elif line.strip() and names:
      for name in names:
        docs[name] += " " + line.strip()
  return docs


def config_flags() -> list[ConfigFlag]:
  """Every generated flag, in the dataclasses' field order."""
  out = []
  for group, cls in GROUPS:
    docs = attribute_docs(cls)
    defaults = cls()
    for field in dataclasses.fields(cls):
      if field.name in NOT_FLAGS:
        continue
      text = docs.get(field.name)
      if not text:
        raise AssertionError(f"{cls.__name__}.{field.name} has no entry in the docstring's "
                             "Attributes section (its flag's help comes from there)")
      out.append(ConfigFlag(field.name, group, getattr(defaults, field.name), text,
                            is_optional_number(field)))
  return out


def define_config_flags(names: Optional[Iterable[str]] = None, exclude: Iterable[str] = (),
                        flag_values=None) -> tuple[str, ...]:
  """Declares the flags of ``names`` (default: all) minus ``exclude``; returns their names.

  Every default is None (the preset's value); the help ends with the field's default.
  """
  flag_values = flag_values if flag_values is not None else flags.FLAGS
  specs = {f.name: f for f in config_flags()}
  chosen = list(specs) if names is None else list(names)
  unknown = [n for n in chosen if n not in specs]
  if unknown:
    raise ValueError(f"not config fields: {', '.join(unknown)}")
  chosen = [n for n in chosen if n not in set(exclude)]
  for name in chosen:
    spec = specs[name]
    default = spec.default
    help_text = spec.help + (f" [config default: {_show(default)}; the env's preset may "
                             "differ]" if default is not None else "")
    kwargs = dict(name=name, default=None, help=help_text, flag_values=flag_values)
    if name in CHOICES:
      flags.DEFINE_enum(enum_values=list(CHOICES[name]), **kwargs)
    elif isinstance(default, bool):
      flags.DEFINE_bool(**kwargs)
    elif isinstance(default, int):
      flags.DEFINE_integer(**kwargs)
    elif spec.optional_number:
      kwargs["help"] += " ['none': None, over a preset's value]"
      flags.DEFINE(_OptionalFloatParser(), serializer=flags.ArgumentSerializer(), **kwargs)
    elif isinstance(default, float):
      flags.DEFINE_float(**kwargs)
    elif isinstance(default, tuple):
      flags.DEFINE_list(**kwargs)
    else:  # str, or None (backend)
      flags.DEFINE_string(**kwargs)
  return tuple(chosen)


class _OptionalFloatParser(flags.FloatParser):
  """absl's float parser that also takes 'none' (any case), parsed as None."""
  syntactic_help = "a number, or 'none'"

  def parse(self, argument):
    if isinstance(argument, str) and argument.strip().lower() == "none":
      return None
    return super().parse(argument)

  def flag_type(self):
    return "float or none"


def _show(value) -> str:
  return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def flag_value(name: str, value):
  """A parsed flag value as the config field takes it (widths: a tuple of ints)."""
  if isinstance(value, list):
    try:
      return tuple(int(w) for w in value)
    except ValueError as e:
      raise ValueError(f"--{name} must be comma-separated integers, got "
                       f"{','.join(value)}") from e
  return value


def given_override(names: Iterable[str], flag_values=None) -> dict:
  """The given flags among ``names`` as a preset-style override
  ({loop fields..., "qsm": {...}, "hparams": {...}}, for ``presets.apply_override``).
  ValueError for a malformed list of widths."""
  flag_values = flag_values if flag_values is not None else flags.FLAGS
  groups = {f.name: f.group for f in config_flags()}
  override = {"qsm": {}, "hparams": {}}
  for name in names:
    flag = flag_values[name]
    if not flag.present:  # given as 'none', an optional number's value is None
      continue
    value = flag_value(name, flag.value)
    if groups[name] is None:
      override[name] = value
    else:
      override[groups[name]][name] = value
  return override
