/*
 * delayline: a fixed one-way delay for scripts/cluster.sh --delay, for
 * kernels without netem (CONFIG_NET_SCH_NETEM).
 *
 *   delayline TUN MS
 *
 * Attaches to the TUN device TUN (made beforehand: `ip tuntap add mode tun
 * name TUN`), reads every packet the host routes into it, and writes it
 * back MS milliseconds later, in order. cluster.sh routes what a host sends
 * to the other hosts into the device, and what comes back out of it onto
 * the host's link, so every packet between hosts waits MS once, at its
 * sender. Up to SLOTS packets wait at once (at 1 Gbit/s and 10 ms about 850
 * MTU-sized packets are in flight); past that a packet is dropped and
 * counted, as netem's `limit` drops. SIGTERM or SIGINT ends it with a line
 * of what it did on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 16384
#define MAXPKT 9216 /* the device's MTU is the link's, at most a jumbo frame */

struct slot {
	long long due;
	int len;
	unsigned char *data;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: delayline TUN MS\n");
		return 2;
	}
	char *end;
	double ms = strtod(argv[2], &end);
	if (*end != '\0' || !(ms > 0 && ms <= 10000)) {
		fprintf(stderr, "delayline: MS must be a number of milliseconds in (0, 10000], not `%s`\n", argv[2]);
		return 2;
	}
	long long delay = (long long)(ms * 1e6);
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
	if (fd < 0) {
		fprintf(stderr, "delayline: /dev/net/tun: %s\n", strerror(errno));
		return 1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		fprintf(stderr, "delayline: attaching to %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	/* One buffer per slot, as long as the device's packets can be. */
	static struct slot q[SLOTS];
	for (int i = 0; i < SLOTS; i++) {
		q[i].data = malloc(MAXPKT);
		if (!q[i].data) {
			fprintf(stderr, "delayline: out of memory\n");
			return 1;
		}
	}
	static unsigned char spill[MAXPKT];
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	long long passed = 0, dropped = 0;
	int head = 0, count = 0;
	while (!stop) {
		long long t = now_ns();
		/* What is due goes out, oldest first. */
		while (count > 0 && q[head].due <= t) {
			if (write(fd, q[head].data, q[head].len) < 0 && errno == EBADF)
				return 1;
			head = (head + 1) % SLOTS;
			count--;
			passed++;
		}
		/* Sleep until the next packet is due or one arrives. */
		struct pollfd p = {.fd = fd, .events = POLLIN};
		struct timespec wait, *until = NULL;
		if (count > 0) {
			long long left = q[head].due - t;
			wait.tv_sec = left / 1000000000LL;
			wait.tv_nsec = left % 1000000000LL;
			until = &wait;
		}
		int ready = ppoll(&p, 1, until, NULL);
		if (ready < 0 && errno != EINTR) {
			fprintf(stderr, "delayline: poll: %s\n", strerror(errno));
			return 1;
		}
		if (ready <= 0)
			continue;
		/* Every packet waiting in the device, stamped on arrival. */
		for (;;) {
			unsigned char *into = count < SLOTS ? q[(head + count) % SLOTS].data : spill;
			ssize_t n = read(fd, into, MAXPKT);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				fprintf(stderr, "delayline: read: %s\n", strerror(errno));
				return 1;
			}
			if (into == spill) {
				dropped++;
				continue;
			}
			struct slot *s = &q[(head + count) % SLOTS];
			s->len = (int)n;
			s->due = now_ns() + delay;
			count++;
		}
	}
	fprintf(stderr, "delayline %s: %lld packets delayed %g ms, %lld dropped (queue full)\n", argv[1], passed, ms,
		dropped);
	return 0;
}
