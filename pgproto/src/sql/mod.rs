//! Statement text, as pure functions: one lexer, the splitter of a simple
//! Query into statements, and the classifier every protocol path shares.

mod classify;
mod lexer;
mod split;

pub use classify::{classify, Declare, Fetch, LocalValue, SelectItem, Set, Statement};
pub use split::{single, split, Piece};
