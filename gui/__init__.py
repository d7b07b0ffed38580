"""Image Triage desktop app: a thin PySide6 layer over the headless core in ``scoring``.

Its job is to show what the core holds and forward the user's keys to it: every decision is a
call into ``scoring`` (the cursor, the sort and the filters belong to the Qt-free
``scoring.tasks.review.ReviewSession``). It may import ``scoring`` and Qt; ``scoring`` never
imports it. Inside, modules import downwards only (``pyproject.toml``, the import-linter
contract "gui: the window over its parts..."): ``launch`` over ``app`` over ``main_window`` over
``tasks`` over ``review_actions`` over the panes and dialogs, over the models and the job runner
(``jobs`` over ``worker``), over ``offthread``, the one runner of short calls.
"""
