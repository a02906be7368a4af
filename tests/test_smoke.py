"""End-to-end: the README's flow through both command lines."""

from __future__ import annotations

from conftest import Sample, poll, run_cli


def test_add_list_remove_with_inv_and_tally_session(sample: Sample) -> None:
    r = run_cli(["inv", "session.add", "--name", "feature-auth"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "tmux attach -t =tally-feature-auth" in r.stdout
    wt = sample.main.parent / "tally-feature-auth"
    assert (wt / "frontend" / "node_modules").is_symlink()
    calls = sample.wait_calls("python")
    assert calls[0]["argv"] == ["manage.py", "runserver", str(sample.config["ports"]["backend"])]
    assert calls[0]["cwd"] == str(wt / "backend")
    assert calls[0]["activated"] == "yes"

    r = run_cli(["tally-session", "list", "--json"], sample.main)
    assert r.returncode == 0, r.stderr
    assert '"running": true' in r.stdout

    r = run_cli(["tally-session", "remove", "feature-auth"], sample.main)
    assert r.returncode == 0, r.stderr
    poll(lambda: not wt.exists())
    assert sample.registry() == {}
