//! Helpers for the end-to-end tests: a static file server for `dist/` and a WebDriver client.
#![allow(dead_code)]

pub mod cli;
pub mod fixtures;
pub mod server;
pub mod webdriver;
