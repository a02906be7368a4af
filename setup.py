"""Packaging beyond pyproject.toml: tally_tasks_startup.pth, beside the package.

Python's `site` runs a ``.pth`` file's ``import`` line at every start of this
environment's Python, so the line does nothing but compare the program's name unless it
is `inv`; then it puts the stand-ins for ``unittest.mock`` and invoke's PyYAML in place
before invoke's script imports invoke (tally_tasks/startup.py; README: Benchmarks). A
wheel's top-level files land in site-packages: `build_py` adds the file to a wheel, and
`editable_wheel` to the wheel of ``pip install -e .`` (whose build leaves out every file
but its finder).
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "tally_tasks_startup.pth"  # sorts after the editable install's own .pth: its finder
# is in place when this line imports the package
LINE = (
    'import sys; (getattr(sys, "argv", None) or [""])[0].rpartition("/")[2] in ("inv", '
    '"invoke") and __import__("tally_tasks.startup").startup.defer()\n'
)


class build_py_pth(build_py):
    def run(self) -> None:
        super().run()
        Path(self.build_lib).mkdir(parents=True, exist_ok=True)
        Path(self.build_lib, PTH).write_text(LINE)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib, PTH))]


class editable_wheel_pth(editable_wheel):
    def run(self) -> None:
        super().run()
        for wheel in Path(self.dist_dir).glob("*.editable-*.whl"):
            _add(wheel, PTH, LINE.encode())


def _add(wheel: Path, name: str, data: bytes) -> None:
    """Add a top-level file to a built wheel, with its line in the RECORD."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    with zipfile.ZipFile(wheel) as old:
        entries = [(info, old.read(info)) for info in old.infolist() if info.filename != name]
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as new:
        new.writestr(name, data)
        for info, content in entries:
            if info.filename.endswith(".dist-info/RECORD"):
                content += f"{name},sha256={digest},{len(data)}\n".encode()
            new.writestr(info, content)
    tmp.replace(wheel)


setup(cmdclass={"build_py": build_py_pth, "editable_wheel": editable_wheel_pth})
