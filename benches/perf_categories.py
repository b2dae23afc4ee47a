#!/usr/bin/env python3
"""Where the service's CPU goes, from a perf profile with call chains.

    perf script -i perf.data -F comm,tid,period,ip,sym,dso | benches/perf_categories.py

Used by benches/load_perf.sh. Each sample (weighted by its period) is put in
one category:

- a sample in the kernel by the system call found in its kernel call chain
  (sendto: the UDP send path, which on loopback also runs the receiver's side
  of the delivery in softirq on the sender's CPU; recvfrom; epoll_wait;
  futex; ...), the rest as interrupts or syscall entry/exit;
- a sample in user space by its leaf symbol (the release build has no frame
  pointers, so user-space chains are not trusted): the SIP stack
  (ivr12333::sip), the SIP driver task (ivr12333::runtime::sip), the media
  clock (ivr12333::runtime::clock), other ivr12333 code, tokio, the
  allocator, libc, the rest.

Within the send path it also gives the share of samples whose chain passes
through the device transmit (__dev_queue_xmit: loopback_xmit and the
delivery it triggers), the receive side of the delivery (net_rx_action ...
udp_queue_rcv_skb, sock_def_readable), the route lookup and the skb build.
Then the share per thread name (media-clock-N folded into media-clock) and
the category x thread matrix. Prints percentages of all samples.
"""
import collections
import re
import sys

KERNEL = '[kernel.kallsyms]'
SEND = {'__x64_sys_sendto', '__sys_sendto', '__x64_sys_sendmsg', '__x64_sys_sendmmsg', 'udp_sendmsg'}
RECV = {'__x64_sys_recvfrom', '__sys_recvfrom', '__x64_sys_recvmsg', '__x64_sys_recvmmsg', 'udp_recvmsg'}
EPOLL = {'__x64_sys_epoll_wait', '__x64_sys_epoll_pwait', 'do_epoll_wait', '__x64_sys_epoll_ctl'}
FUTEX = {'__x64_sys_futex', 'do_futex'}
SLEEP = {'__x64_sys_clock_nanosleep', '__x64_sys_nanosleep', 'hrtimer_nanosleep'}
SCHED = {'__schedule', 'schedule', 'try_to_wake_up', 'finish_task_switch.isra.0', 'finish_task_switch',
         'schedule_hrtimeout_range', 'pick_next_task_fair', 'enqueue_task_fair', 'dequeue_task_fair'}
IRQ = {'asm_sysvec_apic_timer_interrupt', 'sysvec_apic_timer_interrupt', 'irq_exit_rcu', '__do_softirq',
       'handle_softirqs'}
ENTRY = {'syscall_exit_to_user_mode', 'exit_to_user_mode_prepare', 'entry_SYSCALL_64',
         'entry_SYSCALL_64_after_hwframe', 'do_syscall_64'}
# Sub-parts of the send path (a sample may be in several).
SEND_PARTS = [
    ('device transmit (__dev_queue_xmit: loopback_xmit and the delivery it runs)', {'__dev_queue_xmit'}),
    ('receive side of the delivery (net_rx_action .. udp_queue_rcv_skb, sock_def_readable)',
     {'net_rx_action', 'process_backlog', '__netif_receive_skb', '__netif_receive_skb_one_core', 'ip_rcv',
      'udp_rcv', '__udp4_lib_rcv', 'udp_queue_rcv_skb', 'udp_queue_rcv_one_skb', 'udp_unicast_rcv_skb',
      'sock_def_readable', '__udp_enqueue_schedule_skb'}),
    ('route lookup (ip_route_output_flow, fib_table_lookup, xfrm_lookup)',
     {'ip_route_output_flow', 'ip_route_output_key_hash_rcu', 'ip_route_output_key_hash', 'fib_table_lookup',
      'xfrm_lookup_with_ifid', 'xfrm_lookup_route'}),
    ('skb build and copy (ip_make_skb, __ip_append_data, sock_alloc_send_pskb)',
     {'ip_make_skb', '__ip_append_data', 'ip_generic_getfrag', 'sock_alloc_send_pskb'}),
    ('wake-up of a reader (try_to_wake_up, ep_poll_callback)', {'try_to_wake_up', 'ep_poll_callback'}),
]
SEND_CAT = 'kernel: UDP send (sendto -> ip_output -> loopback xmit -> receiver socket)'


def user_category(sym, dso):
    if sym.startswith('ivr12333::sip::') or sym.startswith('<ivr12333::sip::'):
        return 'user: ivr12333::sip (SIP parse, transactions, timers)'
    if 'ivr12333::runtime::sip' in sym:
        return 'user: ivr12333::runtime::sip (SIP driver task)'
    if 'ivr12333::runtime::clock' in sym:
        return 'user: ivr12333::runtime::clock (media clock)'
    if 'ivr12333::' in sym:
        return 'user: ivr12333, other (media, call core, ...)'
    if 'binary_heap::BinaryHeap' in sym:
        return 'user: BinaryHeap push/pop (clock schedule, SIP timers)'
    if 'tokio::' in sym:
        return 'user: tokio'
    if re.search(r'(^|_)(malloc|free|realloc|calloc|cfree)\b|_int_(malloc|free)|malloc_consolidate|tcache|alloc::alloc', sym):
        return 'user: allocator'
    if 'libc' in dso:
        return 'user: libc (syscall wrappers, memcpy)'
    if sym in ('', '[unknown]'):
        return 'user: unknown symbol'
    return 'user: other (std, core, crates)'


def classify(frames):
    """-> (category, set of send-path parts, in_scheduler)"""
    sym, dso = frames[0]
    if dso != KERNEL:
        return user_category(sym, dso), set(), False
    ks = [s for s, d in frames if d == KERNEL]
    kset = set(ks)
    parts = set()
    if kset & SEND:
        cat = SEND_CAT
        parts = {name for name, syms in SEND_PARTS if kset & syms}
    elif kset & RECV:
        cat = 'kernel: UDP receive (recvfrom)'
    elif kset & EPOLL:
        cat = 'kernel: epoll_wait / epoll_ctl'
    elif kset & FUTEX:
        cat = 'kernel: futex'
    elif kset & SLEEP:
        cat = 'kernel: nanosleep'
    elif 'asm_exc_page_fault' in kset:
        cat = 'kernel: page faults'
    else:
        calls = [s for s in ks if s.startswith('__x64_sys_')]
        if calls:
            cat = 'kernel: other system call (%s)' % calls[0][len('__x64_sys_'):]
        elif kset & IRQ:
            cat = 'kernel: interrupts, softirq'
        elif kset & ENTRY:
            cat = 'kernel: syscall entry/exit'
        else:
            cat = 'kernel: other'
    return cat, parts, bool(kset & SCHED)


def main():
    cats, threads, matrix = collections.Counter(), collections.Counter(), collections.Counter()
    parts_c, leaves = collections.Counter(), collections.defaultdict(collections.Counter)
    sched = collections.Counter()
    total = 0
    head_re = re.compile(r'^\s*(\S.*?)\s+(\d+)\s+(\d+)\s*$')
    frame_re = re.compile(r'^\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$')
    head, frames = None, []

    def flush():
        nonlocal total
        if head is None or not frames:
            return
        comm, period = head
        cat, parts, in_sched = classify(frames)
        cats[cat] += period
        threads[comm] += period
        matrix[(cat, comm)] += period
        leaves[cat][frames[0][0]] += period
        for p in parts:
            parts_c[p] += period
        if in_sched:
            sched[cat] += period
        total += period

    for line in sys.stdin:
        line = line.rstrip('\n')
        if not line.strip():
            flush()
            head, frames = None, []
            continue
        if not line[0].isspace():
            flush()
            frames = []
            m = head_re.match(line)
            head = (re.sub(r'-\d+$', '', m.group(1)), int(m.group(3))) if m else None
            continue
        m = frame_re.match(line)
        if m:
            frames.append((re.sub(r'\+0x[0-9a-f]+$', '', m.group(1)), m.group(2)))
    flush()
    if not total:
        print('no samples')
        return

    def pct(v):
        return 100.0 * v / total

    print(f'{total} (sum of sample periods, ns of cpu-clock)')
    print('\n== by category (% of all samples) ==')
    for cat, v in cats.most_common():
        print(f'{pct(v):6.2f}%  {cat}')
        if cat == SEND_CAT:
            for name, _ in SEND_PARTS:
                print(f'           of which {name}: {pct(parts_c[name]):.2f}%')
        if sched[cat] >= total / 1000:
            print(f'           of which in the scheduler (__schedule, try_to_wake_up, ... in the chain): {pct(sched[cat]):.2f}%')
        for s, sv in leaves[cat].most_common(3):
            print(f'             {pct(sv):5.2f}%  {s[:100]}')
    kern = sum(v for c, v in cats.items() if c.startswith('kernel'))
    print(f'\nkernel {pct(kern):.2f}%, user space {pct(total - kern):.2f}%; '
          f'kernel samples with the scheduler in their chain: {pct(sum(sched.values())):.2f}%')
    print('\n== by thread name (% of all samples) ==')
    for name, v in threads.most_common():
        print(f'{pct(v):6.2f}%  {name}')
    names = [n for n, _ in threads.most_common()]
    print('\n== category x thread name (% of all samples) ==')
    print(' ' * 62 + ''.join(f'{n[:15]:>16}' for n in names))
    for cat, _ in cats.most_common():
        print(f'{cat[:62]:62}' + ''.join(f'{pct(matrix[(cat, n)]):15.2f}%' for n in names))


if __name__ == '__main__':
    main()
