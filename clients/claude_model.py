"""The default Claude model, importable without the anthropic SDK (which takes over a
second to import: every flow-run process loads the blocks, few need the SDK)."""

# The newest Sonnet in the installed SDK's `ModelParam` list that is not in
# `anthropic._data.DEPRECATED_MODELS` (a deprecated id makes the SDK warn on every call).
DEFAULT_MODEL = "claude-sonnet-5-5"


def default_model() -> str:
    """The model used when configuration names none."""
    return DEFAULT_MODEL
