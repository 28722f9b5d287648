pub mod dfn_reference;
