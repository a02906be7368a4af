"""The session operations (add, remove, resume, doctor): each a module with `run` (and,
for add and remove, `plan`, their dry run), built on the steps and the core nouns."""
