"""The training flags generated from the config dataclasses (qsm_jax/cli/config_flags.py):
one flag per field, typed by the default, parsed back into a preset-style override."""
import dataclasses

import pytest
from absl import flags

from qsm_jax.cli import config_flags
from qsm_jax.config import QSMConfig, QSMHyperparams, TrainConfig
from qsm_jax.presets import preset_config


def parsed(argv, names=None, exclude=()):
  fv = flags.FlagValues()
  defined = config_flags.define_config_flags(names, exclude, flag_values=fv)
  fv(["prog"] + argv)
  return fv, defined


def test_every_config_field_is_a_flag_with_help():
  fv, defined = parsed([])
  fields = [f.name for cls in (TrainConfig, QSMConfig, QSMHyperparams)
            for f in dataclasses.fields(cls) if f.name not in config_flags.NOT_FLAGS]
  assert sorted(defined) == sorted(fields)
  assert len(fields) == len(set(fields))  # no field name is shared by two dataclasses
  for name in defined:
    assert fv[name].default is None and len(fv[name].help) > 10, name
  assert "a step size free of the reward's scale" in " ".join(fv["score_scale"].help.split())
  # Entries naming several fields, and continuation lines, are parsed.
  assert fv["adam_b2"].help.startswith("Adam's constants")
  assert "rounded down to a multiple of num_envs" in fv["buffer_size"].help


def test_given_flags_become_a_nested_override_and_nothing_else():
  fv, defined = parsed(["--M_q=3", "--actor_hidden=8,4", "--num_envs=2", "--score_scale=batch",
                        "--noclip_sampler", "--backend=spring", "--eval_temperature=0"])
  override = config_flags.given_override(defined, fv)
  assert override == {"num_envs": 2, "backend": "spring",
                      "qsm": {"actor_hidden": (8, 4), "score_scale": "batch",
                              "clip_sampler": False, "eval_temperature": 0.0},
                      "hparams": {"M_q": 3.0}}
  cfg = preset_config("inverted_pendulum", override)
  assert (cfg.num_envs, cfg.qsm.actor_hidden, cfg.hparams.M_q) == (2, (8, 4), 3.0)
  assert cfg.total_steps == preset_config("inverted_pendulum").total_steps  # the preset's


def test_an_optional_number_can_be_set_back_to_none_over_a_preset():
  """The Brax presets set target_temperature to 0; 'none' gives the paper's None again
  (any case), a number stays a number, and a flag not given leaves the preset's value."""
  assert preset_config("hopper").qsm.target_temperature == 0.0
  for text in ("none", "None", "NONE"):
    fv, defined = parsed([f"--target_temperature={text}", "--eval_temperature=0.5"])
    override = config_flags.given_override(defined, fv)
    assert override["qsm"] == {"target_temperature": None, "eval_temperature": 0.5}
    assert preset_config("hopper", override).qsm.target_temperature is None
  fv, defined = parsed([])
  assert preset_config("hopper", config_flags.given_override(defined, fv)
                       ).qsm.target_temperature == 0.0
  assert "'none'" in fv["target_temperature"].help
  with pytest.raises(flags.IllegalFlagValueError):
    parsed(["--target_temperature=nothing"])
  with pytest.raises(flags.IllegalFlagValueError):  # only the optional numbers take it
    parsed(["--M_q=none"])


def test_bad_values_are_refused():
  fv, defined = parsed(["--critic_hidden=64,x"])
  with pytest.raises(ValueError, match="--critic_hidden must be comma-separated integers"):
    config_flags.given_override(defined, fv)
  with pytest.raises(flags.IllegalFlagValueError):
    parsed(["--score_scale=huge"])
  with pytest.raises(flags.IllegalFlagValueError):
    parsed(["--num_envs=2.5"])
  with pytest.raises(flags.IllegalFlagValueError):  # an optional number: a float flag
    parsed(["--eval_temperature=low"])


def test_a_script_takes_a_subset():
  fv, defined = parsed(["--gamma=0.9"], names=("gamma", "num_envs"))
  assert defined == ("gamma", "num_envs")
  with pytest.raises(flags.UnrecognizedFlagError):
    parsed(["--M_q=1"], names=("gamma",))
  _, defined = parsed([], exclude=("algo",))
  assert "algo" not in defined and "M_q" in defined
  with pytest.raises(ValueError, match="not config fields: nope"):
    parsed([], names=("nope",))
