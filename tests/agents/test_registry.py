"""The agent registry: names, sources recorded for runs, and registering agents."""

import subprocess
import sys
import textwrap

import pytest
from purerl.agents import registry


def test_a_module_level_object_is_named_by_module_and_qualname():
    assert registry.source_of(registry.load_object) == "purerl.agents.registry:load_object"
    assert registry.source_of(lambda: None) is None  # Not importable by name.
    assert registry.load_object("purerl.agents.ppo:PPOConfig").__name__ == "PPOConfig"
    with pytest.raises(ValueError, match="has no 'Nope'"):
        registry.load_object("purerl.agents.ppo:Nope")
    with pytest.raises(ValueError, match="Cannot import 'no_such_module_x'"):
        registry.load_object("no_such_module_x:f")


@pytest.mark.parametrize("guarded", [True, False])
def test_a_script_is_recorded_only_where_importing_it_would_not_run_it(tmp_path, guarded):
    body = """
        from purerl.agents import registry

        def make():
            return None

        print("source:", registry.source_of(make))
    """
    body = textwrap.dedent(body)
    if guarded:
        body += '\nif __name__ == "__main__":\n    pass\n'
    script = tmp_path / "my_script.py"
    script.write_text(body)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    want = "my_script:make" if guarded else "None"
    assert f"source: {want}" in out.stdout


def test_register_agent_refuses_a_built_in_name_and_lists_plugins_beside_built_ins():
    with pytest.raises(ValueError, match="one of purerl's own agents"):
        registry.register_agent("ppo", "purerl.agents.ppo:PPOConfig")
    entry = registry.register_agent("my-ppo", "purerl.agents.ppo:PPOConfig")
    try:
        assert "my-ppo" in registry.names() and registry.get("my-ppo") is entry
        assert entry.source == "purerl.agents.ppo:PPOConfig"
        assert entry.recipe_function() is registry.get("ppo").recipe_function()
    finally:
        registry._REGISTRY.pop("my-ppo")
    with pytest.raises(ValueError, match="Unknown agent 'my-ppo'"):
        registry.get("my-ppo")
