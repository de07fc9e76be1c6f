//! What a worker's messages may hold beyond their shape, checked by the engine before anything
//! is written.

use super::EngineError;
use crate::domain::Usage;

/// A reported usage the store can keep and sum: a cost that is not a finite, non-negative number
/// would make every later transition of the execution unreadable or meaningless.
pub(super) fn check_usage(usage: &Usage) -> Result<(), EngineError> {
    if !usage.cost_usd.is_finite() || usage.cost_usd < 0.0 {
        return Err(EngineError::InvalidArgument(format!(
            "usage.cost_usd is {}; it must be a finite number of US dollars, 0 or more",
            usage.cost_usd
        )));
    }
    Ok(())
}
