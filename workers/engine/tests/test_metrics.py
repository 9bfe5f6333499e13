"""Per-unit metrics computed from source."""

from __future__ import annotations

import textwrap

from workers.engine.metrics import MODULE_QUALNAME, measure_source


def units_of(source: str) -> dict:
    result = measure_source(textwrap.dedent(source))
    assert result.error is None, result.error
    return {u.qualname: u for u in result.units}


def test_complexity_counts_every_decision_point():
    units = units_of(
        """
        def f(a, b, c, x, y):
            if a and b or c:
                pass
            elif b:
                pass
            for i in x:
                pass
            else:
                pass
            while y:
                break
            try:
                pass
            except ValueError:
                pass
            except:
                pass
            z = [i for i in x if i if i > 1]
            w = 1 if a else 2
            assert a
            return lambda q: q or a
        """
    )
    # 1 + if 1 + boolops 2 + elif 1 + for 1 + for-else 1 + while 1 + handlers 2
    #   + comprehension (1 + 2 ifs) + ternary 1 + assert 1 + lambda's "or" 1
    assert units["f"].complexity == 16


def test_match_cases_count_except_the_wildcard():
    units = units_of(
        """
        def f(command):
            match command:
                case "go":
                    return 1
                case "stop" | "halt":
                    return 2
                case _:
                    return 0
        """
    )
    assert units["f"].complexity == 3
    assert units["f"].returns == 3


def test_nested_function_is_its_own_unit_and_not_counted_in_the_parent():
    units = units_of(
        """
        def outer(x):
            \"\"\"Docstring
            on two lines.\"\"\"
            # a comment

            y = x  # trailing comment counts as code
            def inner(z):
                if z:
                    return z
                return 0
            return inner(y)
        """
    )
    assert set(units) == {MODULE_QUALNAME, "outer", "outer.inner"}
    assert units["outer"].length == 3  # def, y = x, return
    assert units["outer"].complexity == 1
    assert units["outer"].max_nesting == 0
    assert units["outer.inner"].length == 4
    assert units["outer.inner"].complexity == 2
    assert units["outer.inner"].kind == "function"


def test_nesting_ignores_elif_but_counts_else_if():
    elif_chain = "def f(x):\n    if x == 0:\n        pass\n" + "".join(
        f"    elif x == {i}:\n        pass\n" for i in range(1, 10)
    )
    assert units_of(elif_chain)["f"].max_nesting == 1
    assert units_of(elif_chain)["f"].complexity == 11
    else_if = """
    def g(x):
        if x:
            pass
        else:
            if x > 1:
                pass
            else:
                if x > 2:
                    pass
    """
    assert units_of(else_if)["g"].max_nesting == 3


def test_nesting_counts_loops_with_and_try_blocks():
    units = units_of(
        """
        def g(x):
            for i in x:
                while i:
                    with open(i) as fh:
                        try:
                            fh.read()
                        except OSError:
                            pass
            return 1
        """
    )
    assert units["g"].max_nesting == 4


def test_arguments_exclude_self_and_star_parameters():
    units = units_of(
        """
        class C:
            def m(self, a, b=1, *args, c, d=2, **kw):
                pass

            @classmethod
            def k(cls, a, /, b):
                pass

        def free(self, a):
            pass
        """
    )
    assert units["C.m"].arguments == 4
    assert units["C.m"].kind == "method"
    assert units["C.k"].arguments == 2
    assert units["free"].arguments == 2  # not a method: "self" is an ordinary parameter
    assert units["C"].kind == "class"
    assert units["C"].methods == 2


def test_mutable_defaults_are_counted():
    units = units_of(
        """
        def f(a=[], b={}, c=set(), d=None, *, e=dict(), g=(1,), h=[i for i in range(2)]):
            pass
        """
    )
    assert units["f"].mutable_defaults == 5


def test_bare_and_broad_excepts_respect_reraise():
    units = units_of(
        """
        def f():
            try:
                pass
            except Exception:
                pass
            try:
                pass
            except (ValueError, BaseException):
                log()
            try:
                pass
            except Exception:
                cleanup()
                raise
            try:
                pass
            except:
                pass
            try:
                pass
            except ValueError:
                pass
        """
    )
    assert units["f"].broad_excepts == 2
    assert units["f"].bare_excepts == 1


def test_module_level_except_is_attributed_to_the_module():
    units = units_of(
        """
        try:
            import json
        except:
            json = None
        """
    )
    assert units[MODULE_QUALNAME].bare_excepts == 1


def test_redefined_names_get_stable_suffixes():
    units = units_of(
        """
        class C:
            @property
            def x(self):
                return 1

            @x.setter
            def x(self, value):
                pass
        """
    )
    assert {"C.x", "C.x#2"} <= set(units)
    assert units["C.x#2"].arguments == 1


def test_body_hash_ignores_line_shift_comments_and_docstrings_but_not_code():
    base = "def f(x):\n    y = x + 1\n    return y\n"
    shifted = "import os\n\n\n# moved down\n" + base
    commented = 'def f(x):\n    """Now documented."""\n    # why\n    y = x + 1\n\n    return y\n'
    edited = "def f(x):\n    y = x + 2\n    return y\n"
    hash_of = lambda src: units_of(src)["f"].body_hash  # noqa: E731
    assert hash_of(base) == hash_of(shifted) == hash_of(commented)
    assert hash_of(base) != hash_of(edited)


def test_syntax_errors_are_reported_not_raised():
    result = measure_source('print "python 2"\n')
    assert result.units == ()
    assert result.error is not None and result.error.startswith("SyntaxError")
    assert measure_source(b"x = 1\x00\n").error is not None


def test_bytes_are_decoded_with_their_coding_cookie():
    source = "# -*- coding: latin-1 -*-\ndef f():\n    return 'caf\xe9'\n".encode("latin-1")
    result = measure_source(source)
    assert result.error is None
    assert [u.qualname for u in result.units] == [MODULE_QUALNAME, "f"]
