/* The few libxenctrl calls xbbd needs, behind a plain C interface.
 *
 * xenctrl.h pulls in Xen headers that only compile as C or GNU C++ (anonymous
 * unions, a check against strict ANSI mode), while the project builds strict
 * C++20. Keeping xenctrl.h out of every C++ translation unit costs one small
 * C file. */
#ifndef XBB_RING_PORTS_XENCONTROL_H
#define XBB_RING_PORTS_XENCONTROL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct xc_interface_core;

/* NULL with errno set on failure. */
struct xc_interface_core* xbb_xc_open(void);
void xbb_xc_close(struct xc_interface_core* xc);

/* 1: the domain exists and is not dying; 0: gone or dying; -1: error (errno). */
int xbb_xc_domain_alive(struct xc_interface_core* xc, uint16_t domid);

#ifdef __cplusplus
}
#endif

#endif
