"""The command-line programs (console commands qsm-train, qsm-evaluate, qsm-render,
qsm-compare; experiments/*.py run the same code). Each module defines its absl flags,
so import only the one you run."""
