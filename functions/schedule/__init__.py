"""The schedule Lambda (`ScheduleFunction`): time-based segment transitions, every minute."""
