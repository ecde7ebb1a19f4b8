//! STAND-IN for the HTTP proxy path, written by the runtime branch only so that it builds:
//! the lead drops this file at merge and keeps the real module.

use std::rc::Rc;

use monoio::net::TcpStream;

use crate::worker::{ConnInfo, WorkerCtx};

pub async fn serve_connection(stream: TcpStream, _conn: ConnInfo, _ctx: Rc<WorkerCtx>) {
    drop(stream);
}
