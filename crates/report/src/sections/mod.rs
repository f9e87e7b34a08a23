//! One module per section of the report, in page order after the summary and table: each holds
//! its `*Data`, the `build` that computes it from the trials and, for charts, the `draw` that
//! renders it. Shared drawing setup is in `crate::charts::style`.

pub mod comparison;
pub mod contour;
pub mod curves;
pub mod history;
pub mod importance;
pub mod parallel;
pub mod slices;
pub mod summary;
pub mod table;
pub mod timeline;
