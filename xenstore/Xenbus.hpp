// The xenbus helpers in one include: device states, backend/frontend paths,
// strict key parsing, virtual-device names and the transaction retry loop.
#pragma once

#include "xenstore/BackendPath.hpp"
#include "xenstore/Vdev.hpp"
#include "xenstore/WithTransaction.hpp"
#include "xenstore/XenStore.hpp"
#include "xenstore/XenbusState.hpp"
#include "xenstore/XenstoreKeys.hpp"
