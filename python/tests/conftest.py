import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PYROOT = os.path.dirname(HERE)
REPO = os.path.dirname(PYROOT)
MODELS = os.path.join(REPO, "examples", "models")

if PYROOT not in sys.path:  # also works without PYTHONPATH=python
    sys.path.insert(0, PYROOT)

import pytest  # noqa: E402


def require_tools() -> None:
    """Skips the calling test module when the LLMIR tools are not built (fails instead under
    LLMIR_REQUIRE_TOOLS=1, which the test script sets)."""
    from llmir.driver import tool_path

    try:
        tool_path("llm-run")
    except FileNotFoundError:
        if os.environ.get("LLMIR_REQUIRE_TOOLS") == "1":
            raise
        pytest.skip("LLMIR tools not built", allow_module_level=True)


def model_path(name: str) -> str:
    return os.path.join(MODELS, name + ".json")


@pytest.fixture
def gpt2_tiny():
    from llmir.config import load_config

    return load_config(model_path("gpt2-tiny"))


@pytest.fixture
def llama_tiny():
    from llmir.config import load_config

    return load_config(model_path("llama-tiny"))
