//! boot-api
