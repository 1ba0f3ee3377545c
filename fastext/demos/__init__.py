"""End-to-end demos run by ``fastext run NAME`` (see :data:`fastext.cli.DEMOS`)."""
