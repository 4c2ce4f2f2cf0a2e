import socket, sys, threading, time
# one TCP connection, both ends send N bytes at once (a swap); prints seconds
N = int(float(sys.argv[3])) if len(sys.argv) > 3 else 64 << 20
role, addr = sys.argv[1], sys.argv[2]
if role == "server":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 5999)); s.listen(1); c, _ = s.accept()
else:
    c = socket.create_connection((addr, 5999))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b"x" * (1 << 20)
def send(n):
    while n > 0:
        k = c.send(buf[: min(n, len(buf))]); n -= k
def recv(n):
    while n > 0:
        d = c.recv(min(n, 1 << 20)); n -= len(d)
for mode in ["oneway", "swap", "oneway", "swap"]:
    # sync
    if role == "client": c.sendall(b"g"); c.recv(1)
    else: c.recv(1); c.sendall(b"g")
    t = time.time()
    if mode == "oneway":
        if role == "client": send(N); c.recv(1)
        else: recv(N); c.sendall(b"k")
    else:
        th = threading.Thread(target=send, args=(N,)); th.start(); recv(N); th.join()
        if role == "client": c.sendall(b"d"); c.recv(1)
        else: c.recv(1); c.sendall(b"d")
    dt = time.time() - t
    if role == "client": print(f"{mode:7s} {N/dt/1e6:7.1f} MB/s each way ({dt*1e3:.0f} ms)")
