"""Which key does what in the review queue: one table, read by the app's key handler and by
its legend, so the legend always shows exactly what each key does.

Keys follow the class names where the names are keys themselves:

* classes named by single digits (MNIST's ``0``-``9``) take their own digit: ``7`` is class
  ``7`` whatever its position; digits that name no class do nothing;
* otherwise the first ten classes take ``1``..``9``, ``0`` in their order (CIFAR-10: ``1`` is
  airplane);
* classes named by single letters (EMNIST's ``a``-``z``) take their letter, case-insensitively,
  even ``k`` and ``l``: keep and pick then stay on ``Enter`` and ``/``, and ``g`` (keep this
  image, remove the rest of its duplicate group) stays on the app's Ctrl+G.
"""

from __future__ import annotations

from dataclasses import dataclass

ENTER, SLASH, DELETE = "enter", "/", "delete"


@dataclass(frozen=True)
class KeyMap:
    relabel: dict[str, int]  # key (a digit or lowercase letter) -> class index
    keep: tuple[str, ...]
    pick: tuple[str, ...]
    remove: tuple[str, ...] = (DELETE, "backspace")
    keep_group: tuple[str, ...] = ()  # keep this image, remove the rest of its duplicate group

    def action(self, key: str) -> tuple[str, int | None] | None:
        """``("relabel", class)``, ``("keep", None)``, ``("pick", None)``, ``("remove", None)``,
        ``("keep_group", None)`` or None."""
        key = key.lower()
        if key in self.relabel:
            return "relabel", self.relabel[key]
        for name in ("keep", "pick", "remove", "keep_group"):
            if key in getattr(self, name):
                return name, None
        return None

    def legend(self, classes: list[str]) -> list[tuple[str, str]]:
        """(keys, what they do) rows, class keys first, in key order."""
        order = sorted(self.relabel, key=lambda k: (not k.isdigit(), k == "0", k))
        rows = [(k.upper() if k.isalpha() else k, classes[self.relabel[k]]) for k in order]
        label = {ENTER: "Enter", SLASH: "/", DELETE: "Del"}
        rows.append((" / ".join(label.get(k, k.upper()) for k in self.pick), "pick any class"))
        rows.append((" / ".join(label.get(k, k.upper()) for k in self.keep), "keep the label"))
        rows.append(("Del", "remove"))
        if self.keep_group:
            rows.append((" / ".join(k.upper() for k in self.keep_group), "keep this, remove its duplicates"))
        return rows


def keymap_for(classes: list[str]) -> KeyMap:
    """The key table for a project's classes (see the module docstring)."""
    digit_named = {c: i for i, c in enumerate(classes) if len(c) == 1 and c.isdigit() and c.isascii()}
    relabel: dict[str, int] = dict(digit_named)
    if not digit_named:
        relabel = {str((i + 1) % 10): i for i in range(min(10, len(classes)))}
    letters: dict[str, list[int]] = {}
    for i, c in enumerate(classes):
        if len(c) == 1 and c.isascii() and c.isalpha():
            letters.setdefault(c.lower(), []).append(i)
    relabel.update({k: v[0] for k, v in letters.items() if len(v) == 1})  # 'A' and 'a' both: picker only
    keep = (ENTER,) + (() if "k" in relabel else ("k",))
    pick = (SLASH,) + (() if "l" in relabel else ("l",))
    keep_group = () if "g" in relabel else ("g",)  # the app's menu has it on Ctrl+G whatever the classes
    return KeyMap(relabel, keep, pick, keep_group=keep_group)
