//! Harness that starts real components (PostgreSQL, S3 server, kube-apiserver) for tests.
