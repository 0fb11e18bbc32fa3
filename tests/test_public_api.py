"""The public face: `clipblip.<task>` is the task function itself, so it takes every option the task takes."""

import importlib
import inspect
import subprocess
import sys

import clipblip


def test_every_public_name_resolves():
    for name in clipblip.__all__:
        assert getattr(clipblip, name) is not None, name
    assert set(clipblip.__all__) <= set(dir(clipblip))


def test_task_functions_are_re_exported_not_copied():
    for name, module in clipblip._TASKS.items():
        task = getattr(importlib.import_module(f"clipblip.tasks.{module}"), name)
        assert getattr(clipblip, name) is task
    params = inspect.signature(clipblip.caption).parameters
    assert {"length_penalty", "batch_size", "num_beams", "top_p"} <= set(params)
    assert {"num_beams", "max_new_tokens", "k", "batch_size"} <= set(inspect.signature(clipblip.answer).parameters)


def test_an_unknown_name_is_an_attribute_error():
    try:
        clipblip.no_such_task
    except AttributeError as e:
        assert "no_such_task" in str(e)
    else:
        raise AssertionError("clipblip.no_such_task resolved")


def test_import_stays_light():
    code = "import sys, clipblip; assert 'clipblip.tasks.caption' not in sys.modules; clipblip.caption; " \
           "assert 'clipblip.tasks.caption' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
