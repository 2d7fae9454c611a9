"""The one rule for names that travel: pole ids, broker users, technicians, boards, sensors.

A pole id becomes an MQTT topic level, a broker user name, a line in Mosquitto's
passwd and ACL files, a file name in the state and registration folders, a CWT
``iss`` and a SenML base name. Each of those has characters with a meaning of its own
(``/ + #`` in topics, ``:`` in passwd files, ``..`` and ``/`` in paths, whitespace and
newlines in line-based files, ``$`` in shared subscriptions). So a name is checked once,
here, with a full match of a deliberately small alphabet, and every module that takes
a name from outside calls this, never a regular expression of its own: ``re``'s ``$``
also matches before a trailing newline, which is how ``"nl-1\\n"`` once passed.

Portable to MicroPython (no ``re``): the console and the config loader run on the pole.
"""

ID_MAX = 63
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ID_CHARS = frozenset(_ALNUM + "-")
_ID_FIRST = frozenset(_ALNUM)
_SENSOR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_SENSOR_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")

ID_RULE = "1 to 63 letters, digits and '-', starting with a letter or digit"
SENSOR_RULE = "1 to 63 lower-case letters, digits and '_', starting with a letter or digit"


class InvalidName(ValueError):
    """A name that breaks the rule; the message says which rule, never echoes raw bytes."""


def describe(value: object) -> str:
    """A bounded, printable description of an untrusted value for error messages: the
    value itself only when it is a short, harmless string; else its type and length."""
    if isinstance(value, str):
        if len(value) <= 64 and all(" " < c <= "~" for c in value):
            return '"' + value + '"'
        return "a %d-character string with characters outside the rule" % len(value)
    if isinstance(value, (bytes, bytearray)):
        return "%d bytes" % len(value)
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and -(2**64) <= value < 2**64:  # what a decoder can yield
        return str(value)
    return "a value of type " + type(value).__name__


def _check(value: object, what: str, first: frozenset, rest: frozenset, rule: str) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= ID_MAX
        or value[0] not in first
        or any(c not in rest for c in value)
    ):
        raise InvalidName("%s %s is not valid: use %s" % (what, describe(value), rule))
    return value


def check_id(value: object, what: str = "pole id") -> str:
    """``value`` if it is a valid id (pole, broker user, technician, board), else
    ``InvalidName``. ``what`` names the thing in the message ("pole id", "user", ...)."""
    return _check(value, what, _ID_FIRST, _ID_CHARS, ID_RULE)


def check_pole_id(value: object) -> str:
    return check_id(value, "pole id")


def check_sensor_name(value: object) -> str:
    """Sensor names become SenML name parts and health counter names."""
    return _check(value, "sensor name", _SENSOR_FIRST, _SENSOR_CHARS, SENSOR_RULE)


def is_id(value: object) -> bool:
    try:
        check_id(value)
    except InvalidName:
        return False
    return True
