"""The way in: admission control, folder and S3 watchers, files named on the command line, dead-letter retries."""
