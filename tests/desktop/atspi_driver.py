#!/usr/bin/python3
"""Drives Peercall's window as a screen reader user would: through AT-SPI (pyatspi), never the mouse.

Run by tests/desktop.rs under Xvfb with a D-Bus session and the AT-SPI bus. It prints one line per
step ("step: detail") for the Rust test, which watches the far side of the call; a line starting with
"fail:" says what was missing, with the tree as it was, and the script exits 1.
Usage: atspi_driver.py PEER_NAME
"""

import sys
import time

import pyatspi
from gi.repository import GLib

PEER = sys.argv[1]
LIST_NAME = "People in this room"


def say(*parts):
    print(*parts, flush=True)


def walk(acc):
    """Every node under acc, acc first (depth first, as a screen reader's flat review reads)."""
    if acc is None:
        return
    yield acc
    try:
        children = [acc.getChildAtIndex(i) for i in range(acc.childCount)]
    except Exception:  # a node that went away while we walked
        return
    for child in children:
        yield from walk(child)


def describe(acc):
    try:
        return f"{acc.getRoleName()} {acc.name!r}"
    except Exception:
        return "(gone)"


def window():
    """Peercall's top-level frame among the desktop's applications."""
    desktop = pyatspi.Registry.getDesktop(0)
    for app in desktop:
        if app is None:
            continue
        for i in range(app.childCount):
            frame = app.getChildAtIndex(i)
            if frame is not None and (frame.name or "").startswith("Peercall"):
                return frame
    return None


def dump(root):
    return "\n".join("  " + describe(n) for n in walk(root))


def fail(what):
    root = window()
    say(f"fail: {what}; the tree:\n{dump(root) if root else '  (no Peercall window)'}")
    sys.exit(1)


def until(what, probe, timeout=20.0):
    """probe() until it returns something truthy; fail with what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = probe()
        except Exception:  # nodes come and go while the window redraws
            found = None
        if found:
            return found
        time.sleep(0.1)
    fail(f"timed out after {timeout:.0f} s waiting for {what}")


def find(role, pred, root=None):
    root = root or window()
    for node in walk(root):
        try:
            if node.getRole() == role and pred(node.name or ""):
                return node
        except Exception:
            continue
    return None


def enabled(acc):
    return acc.getState().contains(pyatspi.STATE_SENSITIVE)


def press(acc, label):
    """The Action interface's click, as Orca's "activate" does."""
    action = acc.queryAction()
    names = [action.getName(i) for i in range(action.nActions)]
    if "click" not in names:
        fail(f"{label} offers no click action (it offers {names})")
    action.doAction(names.index("click"))
    say(f"pressed: {label}")


def text_of(acc):
    try:
        text = acc.queryText()
        return text.getText(0, text.characterCount)
    except NotImplementedError:
        return None


# The login form: the name field (named by its label) holds the account's name; Join is pressed.
until("the Peercall window", window)
field = until("the name field", lambda: find(pyatspi.ROLE_ENTRY, lambda n: n == "Your name"))
say(f"name-field: {text_of(field)}")
join = until("the Join button", lambda: find(pyatspi.ROLE_PUSH_BUTTON, lambda n: n == "Join"))
extents = join.queryComponent().getExtents(pyatspi.DESKTOP_COORDS)
say(f"join-button: {extents.width} {extents.height}")
press(join, "Join")

# The user list, a person in it by name; pressing them places the call.
people = until("the user list", lambda: find(pyatspi.ROLE_LIST, lambda n: n == LIST_NAME))
peer = until(f"{PEER} in the list", lambda: find(pyatspi.ROLE_LIST_ITEM, lambda n: n == f"{PEER}, available", people))
say(f"found: {describe(peer)} in {describe(people)}")
press(peer, PEER)

# In the call: the list says so, Hang Up is live; pressing it ends the call.
def in_call():
    item = find(pyatspi.ROLE_LIST_ITEM, lambda n: n == f"{PEER}, in call")
    hang_up = find(pyatspi.ROLE_PUSH_BUTTON, lambda n: n == "Hang Up")
    return item and hang_up and enabled(hang_up) and (item, hang_up)


item, hang_up = until("the call to show in the list and Hang Up to be enabled", in_call)
say(f"in-call: {describe(item)}")
press(hang_up, "Hang Up")


def idle():
    item = find(pyatspi.ROLE_LIST_ITEM, lambda n: n == f"{PEER}, available")
    hang_up = find(pyatspi.ROLE_PUSH_BUTTON, lambda n: n == "Hang Up")
    return item and hang_up and not enabled(hang_up) and item


say(f"idle: {describe(until('the list and Hang Up back to no call', idle))}")

# An incoming call is announced (an assertive live region); Decline is found in the alert and pressed.
heard = []


def on_announcement(event):
    heard.append(str(event.any_data))
    if "is calling" in heard[-1]:
        pyatspi.Registry.stop()


pyatspi.Registry.registerEventListener(on_announcement, "object:announcement")
GLib.timeout_add_seconds(20, lambda: pyatspi.Registry.stop() or False)
say("listening")
pyatspi.Registry.start()
calling = [text for text in heard if "is calling" in text]
if not calling:
    fail(f"no announcement of the incoming call (heard {heard})")
say(f"announced: {calling[0]}")
alert = until("the incoming-call alert", lambda: find(pyatspi.ROLE_ALERT, lambda n: n == f"{PEER} is calling"))
decline = until("Decline in the alert", lambda: find(pyatspi.ROLE_PUSH_BUTTON, lambda n: n == "Decline", alert))
say(f"alert: {describe(alert)}")
press(decline, "Decline")
until("the alert to close", lambda: find(pyatspi.ROLE_ALERT, lambda n: True) is None)
say("done")
