//! NSX Policy API: the wire model shared by the plan, the client and the simulator.

pub mod model;
