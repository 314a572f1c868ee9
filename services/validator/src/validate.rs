//! Validation: which spec a machine must meet and the verdict on its inventory.
