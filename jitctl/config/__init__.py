"""The config file and the environment, checked strictly (unknown keys are errors)."""
