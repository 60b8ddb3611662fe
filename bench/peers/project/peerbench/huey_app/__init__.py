"""A Django app holding huey's benchmark tasks in its `tasks` module, where djhuey's
`run_huey` finds them (it imports every installed app's `tasks`)."""
