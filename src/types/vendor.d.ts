// Packages that ship no type declarations.
declare module 'jpeg-lossless-decoder-js';
declare module 'dcmjs';
