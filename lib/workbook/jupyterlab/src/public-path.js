// Chunks and assets load from the server's static URL for this app, which is known only at run time
// (the base URL of the server): set it before any other module asks webpack for a chunk.
import { PageConfig } from '@jupyterlab/coreutils';
// eslint-disable-next-line no-undef
__webpack_public_path__ = PageConfig.getOption('fullStaticUrl') + '/';
