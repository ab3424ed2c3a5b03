"""The README's testing example runs as written, through the installed plugin."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_readme_example_passes(pytester):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Testing your code with embedlog", 1)[1]
    code = re.search(r"```python\n(# test_billing\.py\n.*?)```", section, re.S)[1]
    pytester.makepyfile(test_readme_billing=code)
    r = pytester.runpytest("-p", "no:cacheprovider")
    r.assert_outcomes(passed=2)
