"""log.py: one prefix on every line, put there once, by the module's own logger."""

import importlib
import logging
import pkgutil

from stickyroute.log import PREFIX, get_logger


def test_every_line_is_prefixed_once_and_keeps_its_arguments(caplog):
    logger = get_logger("stickyroute.some.module")
    with caplog.at_level(logging.DEBUG, "stickyroute"):
        logger.info("account %s is %s", "oa", "cooling")
        logger.warning("plain")
        logger.debug("%d%%", 5)
    assert [r.getMessage() for r in caplog.records] == [
        "stickyroute: account oa is cooling", "stickyroute: plain", "stickyroute: 5%"]
    assert [r.args for r in caplog.records][0] == ("oa", "cooling")  # %s, formatted lazily
    assert {r.name for r in caplog.records} == {"stickyroute.some.module"}
    assert PREFIX == "stickyroute: "


def test_levels_and_tracebacks_pass_through(caplog):
    logger = get_logger("stickyroute.x")
    with caplog.at_level(logging.WARNING, "stickyroute"):
        logger.info("not shown at WARNING")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("could not %s", "route")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.getMessage() == "stickyroute: could not route"
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_every_module_logs_through_it():
    """A logger made the plain way would print lines nobody can tell are ours."""
    import stickyroute

    loggers = {}
    for info in pkgutil.walk_packages(stickyroute.__path__, "stickyroute."):
        module = importlib.import_module(info.name)
        if hasattr(module, "logger"):
            loggers[info.name] = module.logger
    assert "stickyroute.addons.route" in loggers and "stickyroute.stores.redis" in loggers
    for name, logger in loggers.items():
        assert isinstance(logger, logging.LoggerAdapter), name
        assert logger.logger.name == name and logger.process("x", {})[0] == PREFIX + "x"
