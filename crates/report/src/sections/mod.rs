//! One module per section of the report, in page order after the summary and table: each holds
//! its `*Data`, the `build` that computes it from the trials and, for charts, the `draw` that
//! renders it; the summary, the comparison and the table also write their part of the page
//! (`html`). Shared drawing setup is in `crate::charts::style`; the page around the sections, and
//! each chart's figure and caption, in `crate::html`.

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
