"""The five built-in workers (Analysis, Dream, Recall, Think, Learning) on a git checkout.

``workers.builtin.workers`` holds the worker classes, ``repo`` the shared view of the checkout,
``replay`` the history replay through the real exchange (``manage.py replay_history``).
"""
