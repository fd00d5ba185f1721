use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;

use super::{BodyBudget, Overloaded};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn permits_take_and_give_back_every_counter() {
    let b = BodyBudget::new(100, 60);
    let (c1, c2) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut p = b.permit(ip("10.0.0.1"), &c1);
    p.grow(40).unwrap();
    assert_eq!(b.in_use(), 40);
    // The same address on another connection shares the address's share.
    let mut q = b.permit(ip("10.0.0.1"), &c2);
    assert_eq!(q.grow(30), Err(Overloaded));
    q.grow(20).unwrap();
    drop(p);
    assert_eq!(b.in_use(), 20);
    drop(q);
    assert_eq!(b.in_use(), 0);
}

#[test]
fn the_whole_budget_caps_many_addresses_and_a_refusal_takes_nothing() {
    // Shares as large as the budget: two addresses may hash to one slot.
    let b = BodyBudget::new(100, 100);
    let conns: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
    let mut a = b.permit(ip("10.0.0.1"), &conns[0]);
    let mut c = b.permit(ip("10.0.0.2"), &conns[1]);
    a.grow(50).unwrap();
    c.grow(50).unwrap();
    let mut d = b.permit(ip("10.0.0.3"), &conns[2]);
    assert_eq!(d.grow(1), Err(Overloaded));
    assert_eq!(d.held(), 0);
    assert_eq!(b.in_use(), 100);
    drop(a);
    d.grow(1).unwrap();
}

#[test]
fn one_connection_shares_one_share_whatever_the_address() {
    // Behind trusted proxies one connection carries many addresses.
    let b = BodyBudget::new(1000, 60);
    let conn = AtomicUsize::new(0);
    let mut a = b.permit(ip("10.0.0.1"), &conn);
    let mut c = b.permit(ip("10.0.0.2"), &conn);
    a.grow(40).unwrap();
    assert_eq!(c.grow(40), Err(Overloaded));
}

#[test]
fn an_ipv6_client_counts_by_its_64() {
    let b = BodyBudget::new(1000, 60);
    let (c1, c2) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut a = b.permit(ip("2001:db8::1"), &c1);
    let mut c = b.permit(ip("2001:db8::ffff:2"), &c2);
    a.grow(40).unwrap();
    assert_eq!(c.grow(40), Err(Overloaded));
}
