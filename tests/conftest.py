"""Test-session environment: offline settings, then fixture plugins (one module per service)."""

import os

# Set before anything imports litellm, prefect or huggingface libraries.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("PREFECT_API_URL", None)

pytest_plugins = [
    "tests.fixtures.sim",
    "tests.fixtures.s3",
    "tests.fixtures.images",
    "tests.fixtures.prefect",
    "tests.fixtures.label_studio",
]
