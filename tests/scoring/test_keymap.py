"""The review keys follow the class names: digits name digit classes, letters letter classes."""

from __future__ import annotations

from scoring.keymap import keymap_for

MNIST = [str(d) for d in range(10)]
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_digit_named_classes_take_their_own_digit() -> None:
    km = keymap_for(MNIST)
    assert all(km.action(str(d)) == ("relabel", d) for d in range(10))
    some = keymap_for(["3", "5", "7", "cat"])  # '7' is class index 2; '1' names no class
    assert some.action("7") == ("relabel", 2) and some.action("1") is None
    assert ("7", "7") in some.legend(["3", "5", "7", "cat"])


def test_named_classes_take_digits_in_order() -> None:
    km = keymap_for(CIFAR)
    assert km.action("1") == ("relabel", 0) and km.action("0") == ("relabel", 9)
    assert km.legend(CIFAR)[:2] == [("1", "airplane"), ("2", "automobile")]
    assert km.legend(CIFAR)[9] == ("0", "truck")
    assert km.action("k") == ("keep", None) and km.action("l") == ("pick", None)


def test_letter_classes_take_their_letter_even_k_and_l() -> None:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    km = keymap_for(letters)
    assert km.action("K") == ("relabel", 10) and km.action("l") == ("relabel", 11)
    assert km.action("enter") == ("keep", None) and km.action("/") == ("pick", None)
    legend = dict(km.legend(letters))
    assert legend["K"] == "k" and legend["Enter"] == "keep the label" and legend["/"] == "pick any class"


def test_every_legend_row_is_what_the_key_does() -> None:
    for classes in (MNIST, CIFAR, ["a", "B", "cat"], ["x"], []):
        km = keymap_for(classes)
        for keys, what in km.legend(classes):
            for key in keys.split(" / "):
                name = {"Enter": "enter", "Del": "delete"}.get(key, key.lower())
                act = km.action(name)
                assert act is not None
                assert what == (classes[act[1]] if act[0] == "relabel" and act[1] is not None else
                                {"keep": "keep the label", "pick": "pick any class", "remove": "remove",
                                 "keep_group": "keep this, remove its duplicates"}[act[0]])


def test_g_keeps_one_of_a_duplicate_group_unless_a_class_is_named_g() -> None:
    assert keymap_for(["cat", "dog"]).action("g") == ("keep_group", None)
    assert ("G", "keep this, remove its duplicates") in keymap_for(["cat", "dog"]).legend(["cat", "dog"])
    letters = [chr(ord("a") + i) for i in range(26)]
    assert keymap_for(letters).action("g") == ("relabel", 6)
