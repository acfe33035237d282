#include "ring/ports/XenControl.h"

#include <xenctrl.h>

struct xc_interface_core* xbb_xc_open(void) { return xc_interface_open(NULL, NULL, 0); }

void xbb_xc_close(struct xc_interface_core* xc) { xc_interface_close(xc); }

int xbb_xc_domain_alive(struct xc_interface_core* xc, uint16_t domid) {
  /* Xen 4.17 has no xc_domain_getinfo_single(); getinfolist returns the first
   * domain at or after `domid`, so check that it is this one. */
  xc_domaininfo_t info;
  int n = xc_domain_getinfolist(xc, domid, 1, &info);
  if (n < 0) return -1;
  if (n == 0 || info.domain != domid) return 0;
  return (info.flags & XEN_DOMINF_dying) ? 0 : 1;
}
