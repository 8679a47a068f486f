"""qsm_jax: Q-Score Matching diffusion policies in JAX, with Brax on-device training."""
from setuptools import find_packages, setup

# Pinned deliberately (see WORKSPACE.md, "Versions"): jax 0.10 removed
# jax.device_put_replicated, which brax 0.14.2's own trainers (Brax SAC, our external
# reference) still call; with jax 0.9.2 both the envs and the trainers work.
CORE = [
    "jax==0.9.2",
    "jaxlib==0.9.2",
    "flax==0.12.6",
    "optax==0.2.8",
    "chex==0.1.92",
    "brax==0.14.2",
    "orbax-checkpoint==0.12.8",
    "absl-py>=2.1",
    "numpy>=1.26",
]

setup(
    name="qsm_jax",
    version="0.1.0",
    description="Q-Score Matching (Psenka et al., ICML 2024) as pure, jitted JAX functions",
    packages=find_packages(include=["qsm_jax", "qsm_jax.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "matplotlib>=3.8", "torch==2.13.0",
                 "gymnasium[mujoco]>=1.0", "playground==0.2.0"],
        # DeepMind Control Suite tasks (dmc/<task>) through MuJoCo Playground.
        "dmc": ["playground==0.2.0"],
        "plot": ["matplotlib>=3.8"],
        "bench": ["torch==2.13.0", "gymnasium[mujoco]>=1.0", "matplotlib>=3.8"],
    },
)
