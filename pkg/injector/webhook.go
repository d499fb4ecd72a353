package injector

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Path is where the API server sends AdmissionReviews.
const Path = "/mutate"

// maxReview bounds a request body: the API server sends at most its own
// request limit (3 MiB) plus the review's envelope.
const maxReview = 8 << 20

// ServeHTTP answers an admission.k8s.io/v1 AdmissionReview for a Pod.
// Anything else that reaches it (another kind, an update) is admitted
// unchanged: the webhook configuration decides what is sent.
func (in *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "want Content-Type: application/json", http.StatusUnsupportedMediaType)
		return
	}
	var review admissionv1.AdmissionReview
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReview))
	if err == nil {
		err = json.Unmarshal(body, &review)
	}
	if err == nil && review.Request == nil {
		err = errors.New("no request")
	}
	if err != nil {
		in.metrics.injections.WithLabelValues("error", ReasonBadRequest).Inc()
		http.Error(w, fmt.Sprintf("decode AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	resp := in.review(r, review.Request)
	resp.UID = review.Request.UID
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

func (in *Injector) review(r *http.Request, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Resource != podResource || req.SubResource != "" || req.Operation != admissionv1.Create {
		return allow
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		in.metrics.injections.WithLabelValues("error", ReasonBadRequest).Inc()
		return deny(http.StatusBadRequest, fmt.Sprintf("phase-sidecar: decode the pod: %v", err))
	}
	res, err := in.Mutate(r.Context(), req.Namespace, &pod)
	if err != nil {
		var ref *Refusal
		code := http.StatusForbidden
		if errors.As(err, &ref) && ref.Reason == ReasonAPIError {
			code = http.StatusInternalServerError
		}
		return deny(int32(code), "phase-sidecar: "+err.Error())
	}
	allow.Warnings = res.Warnings
	if len(res.Patch) > 0 {
		p, err := json.Marshal(res.Patch)
		if err != nil {
			return deny(http.StatusInternalServerError, fmt.Sprintf("phase-sidecar: encode the patch: %v", err))
		}
		pt := admissionv1.PatchTypeJSONPatch
		allow.Patch, allow.PatchType = p, &pt
	}
	return allow
}

func deny(code int32, msg string) *admissionv1.AdmissionResponse {
	reason := map[int32]metav1.StatusReason{
		http.StatusBadRequest:          metav1.StatusReasonBadRequest,
		http.StatusForbidden:           metav1.StatusReasonForbidden,
		http.StatusInternalServerError: metav1.StatusReasonInternalError,
	}[code]
	return &admissionv1.AdmissionResponse{Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: code, Message: msg, Reason: reason,
	}}
}
