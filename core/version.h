#pragma once
#define QFT_VERSION "0.1.0"
