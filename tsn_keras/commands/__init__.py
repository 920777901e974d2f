"""One module per `tsn` subcommand: ``configure_parser(parser)`` and ``run(args) -> int``.

Command modules import heavy libraries (TensorFlow, OpenCV) inside ``run`` so that building
the parser stays fast.
"""
