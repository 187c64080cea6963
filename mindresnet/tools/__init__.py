"""The tools, each a library module with a thin command line (``python -m mindresnet.<tool>``, which
runs :func:`main` of the module here): evaluate, predict, visualize, export, convert, lr_find.
:mod:`~mindresnet.tools.eval_data` gives them a checkpoint's held-out data."""
