//! `Server`: a producer that answers requests and can be made to fail, for the tests
//! of calls (`calls`) and of lifecycles (`lifecycle`).

use gen_stage::{BoxError, ExitReason, Init, Producer, ProducerContext, ProducerRef, ReplyTo};
use gen_stage_test::Recorded;

#[derive(Clone, Copy)]
pub(crate) enum Fault {
    Panic,
    Error,
    /// Only for `init`: return `Init::Ignore`.
    Ignore,
}

/// A producer that answers requests; it emits nothing on demand.
#[derive(Default)]
pub(crate) struct Server {
    value: u64,
    held: Vec<ReplyTo<u64>>,
    log: ServerLog,
    on_init: Option<Fault>,
    on_demand: Option<Fault>,
}

#[derive(Clone, Default)]
pub(crate) struct ServerLog {
    /// One entry per reply handle the server kept for later.
    pub(crate) held: Recorded<()>,
    pub(crate) terminated: Recorded<ExitReason>,
}

pub(crate) enum Req {
    Get(ReplyTo<u64>),
    Add(u64),
    /// Keep the reply handle; `Release` answers it.
    Later(ReplyTo<u64>),
    Release,
    /// Drop the reply handle without replying.
    Forget(ReplyTo<u64>),
    StopWith(ExitReason),
    Panic,
    Fail,
}

pub(crate) fn server() -> (Server, ServerLog) {
    let server = Server::default();
    let log = server.log.clone();
    (server, log)
}

impl Server {
    /// `init` fails with `fault`.
    pub(crate) fn on_init(self, fault: Fault) -> Self {
        let on_init = Some(fault);
        Server { on_init, ..self }
    }

    /// `handle_demand` fails with `fault`.
    pub(crate) fn on_demand(self, fault: Fault) -> Self {
        let on_demand = Some(fault);
        Server { on_demand, ..self }
    }
}

pub(crate) async fn start_server(server: Server) -> ProducerRef<Server> {
    let started = gen_stage::producer(server).start().await;
    started.expect("the server starts")
}

impl Producer for Server {
    type Event = u64;
    type Message = Req;

    async fn init(&mut self, _ctx: &mut ProducerContext<'_, Self>) -> Result<Init, BoxError> {
        match self.on_init {
            None => Ok(Init::Start),
            Some(Fault::Ignore) => Ok(Init::Ignore),
            Some(Fault::Error) => Err("no config".into()),
            Some(Fault::Panic) => panic!("init exploded"),
        }
    }

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        match self.on_demand {
            Some(Fault::Panic) => panic!("demand exploded"),
            Some(_) => Err("no more demand".into()),
            None => Ok(Vec::new()),
        }
    }

    async fn handle_message(
        &mut self,
        message: Req,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message {
            Req::Get(reply) => reply.send(self.value),
            Req::Add(amount) => self.value += amount,
            Req::Later(reply) => {
                self.held.push(reply);
                self.log.held.push(());
            }
            Req::Release => self.held.drain(..).for_each(|reply| reply.send(self.value)),
            Req::Forget(reply) => drop(reply),
            Req::StopWith(reason) => ctx.stop(reason),
            Req::Panic => panic!("message exploded"),
            Req::Fail => return Err("request failed".into()),
        }
        Ok(())
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        self.log.terminated.push(reason.clone());
    }
}
