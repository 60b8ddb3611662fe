"""What the admin and the JSON API read: the status snapshot, task lists of millions of
rows, logs, owners, the task allow-list and API tokens, and the admin pages' helpers."""
