//! `rdb member list|add|promote|remove` and `rdb leader transfer`: the
//! cluster administration endpoints (docs/API.md) from the command line,
//! through any node.

use serde_json::{json, Value};

use super::client::{Client, ClientArgs, ClientError};

/// `rdb member` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MemberCmd {
    /// List the members, their roles and addresses (and, from the leader,
    /// how far each has replicated).
    List,
    /// Add a member (a learner unless --voter), started with `rdb serve
    /// --join`.
    Add {
        /// Its id (a positive integer not used by any member).
        id: u64,
        /// The address its peers dial (ip:port).
        #[arg(long)]
        peer: String,
        /// The URL its clients use.
        #[arg(long)]
        client_url: Option<String>,
        /// Add it as a voter at once (riskier: a voter that is behind
        /// counts toward quorum before it can help reach one).
        #[arg(long)]
        voter: bool,
    },
    /// Make a learner a voter (refused while it is far behind).
    Promote {
        /// The learner's id.
        id: u64,
    },
    /// Remove a member (the leader too: it hands over first).
    Remove {
        /// The member's id.
        id: u64,
    },
}

/// `rdb leader` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LeaderCmd {
    /// Hand leadership to a voter (the most caught-up one without --to).
    Transfer {
        /// The voter to lead.
        #[arg(long)]
        to: Option<u64>,
    },
}

/// Runs `rdb member ...`; what to print.
pub fn member(command: &MemberCmd, args: &ClientArgs) -> Result<String, ClientError> {
    let client = Client::new(args)?;
    let answer = match command {
        MemberCmd::List => client.expect_ok("GET", "/admin/members", None)?,
        MemberCmd::Add { id, peer, client_url, voter } => {
            let body = json!({"id": id, "peer": peer, "client_url": client_url,
                              "learner": !voter});
            client.expect_ok("POST", "/admin/members", Some(&body))?
        }
        MemberCmd::Promote { id } => {
            client.expect_ok("POST", &format!("/admin/members/{id}/promote"), None)?
        }
        MemberCmd::Remove { id } => {
            client.expect_ok("DELETE", &format!("/admin/members/{id}"), None)?
        }
    };
    Ok(if args.json { answer.to_string() } else { members_table(&answer) })
}

/// Runs `rdb leader ...`; what to print.
pub fn leader(command: &LeaderCmd, args: &ClientArgs) -> Result<String, ClientError> {
    let client = Client::new(args)?;
    let LeaderCmd::Transfer { to } = command;
    let body = match to {
        Some(to) => json!({"to": to}),
        None => json!({}),
    };
    let answer = client.expect_ok("POST", "/admin/leader", Some(&body))?;
    Ok(if args.json {
        answer.to_string()
    } else {
        format!("node {} leads (term {})", answer["leader"], answer["term"])
    })
}

/// The members as a table, the leader marked.
fn members_table(answer: &Value) -> String {
    let leader = answer["leader"].as_u64().unwrap_or(0);
    let mut out =
        format!("{:<6} {:<8} {:<22} {:<28} {:>11}\n", "ID", "ROLE", "PEER", "CLIENT URL", "MATCH");
    for member in answer["members"].as_array().into_iter().flatten() {
        let id = member["id"].as_u64().unwrap_or(0);
        let role = member["role"].as_str().unwrap_or("?");
        let role = if id == leader { format!("{role}*") } else { role.to_string() };
        let matched = member["match_index"].as_u64().map_or("-".to_string(), |m| m.to_string());
        out.push_str(&format!(
            "{id:<6} {role:<8} {:<22} {:<28} {matched:>11}\n",
            member["peer"].as_str().unwrap_or(""),
            member["client_url"].as_str().unwrap_or(""),
        ));
    }
    out.push_str(&format!("* leader (term {})", answer["term"]));
    out
}
