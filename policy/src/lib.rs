//! capwise-policy: knows the link, keeps data-cap budgets, and decides how much
//! the engine may send and receive, with a reason a person understands.
