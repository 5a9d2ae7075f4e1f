"""``Job``: what ``@job`` returns. Callable as the function itself; ``.enqueue``,
``.delay`` and ``.apply`` submit it."""
