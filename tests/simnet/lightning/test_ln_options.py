"""The stand-in reads lightningd's config files the way lightningd does (what the role writes)."""

from __future__ import annotations

from pathlib import Path

from simnet.lightning.options import parse


def test_include_lines_in_lightningd_form_are_followed(tmp_path: Path) -> None:
    secret = tmp_path / "bitcoin-rpc.conf"
    secret.write_text("bitcoin-rpcpassword=s3cret\n")
    plugins = tmp_path / "bitcoin-reckless.conf"
    plugins.write_text("plugin=/opt/reckless/cl-zmq/cl-zmq.py\n")
    conf = tmp_path / "config"
    conf.write_text(
        f"network=bitcoin\nbitcoin-rpcuser=satoshi\ninclude {secret}\ninclude={plugins}\n"
    )
    opts = parse([f"--conf={conf}"])
    assert opts.get("bitcoin-rpcpassword") == "s3cret"
    assert opts.plugins == ["/opt/reckless/cl-zmq/cl-zmq.py"]
    assert opts.unknown == []
