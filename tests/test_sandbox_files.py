"""files= in and collect= out of a sandbox run: inputs arrive, outputs come back, planted links and huge files do not."""

import pytest

from jaxlab.sandbox import run_python


def test_files_in_and_collect_out():
    code = "data = open('in/table.csv').read()\nopen('out.txt', 'w').write(data.upper())\n"
    r = run_python(code, files={"in/table.csv": "a,b\n1,2\n"}, collect=("out.txt", "missing.txt"), timeout_s=20)
    assert r.ok, r.stderr
    assert r.files == {"out.txt": b"A,B\n1,2\n"}


def test_symlink_planted_by_the_code_is_not_followed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    code = f"import os\nos.symlink({str(secret)!r}, 'out.txt')\nos.makedirs('d')\nos.symlink('/etc', 'e')\n"
    r = run_python(code, collect=("out.txt", "e/hostname"), timeout_s=20)
    assert r.ok, r.stderr
    assert r.files == {}


def test_oversized_output_is_left_out():
    r = run_python(
        "open('big.bin', 'wb').write(b'x' * 5000)\nopen('small.bin', 'wb').write(b'y')\n",
        collect=("big.bin", "small.bin"),
        max_collect_bytes=4096,
        timeout_s=20,
    )
    assert r.files == {"small.bin": b"y"}


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "main.py", ""])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match="files"):
        run_python("pass", files={name: "x"})
