"""Where document bytes come from: folders and S3-compatible buckets. Events name a source and a key."""
